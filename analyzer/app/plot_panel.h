// A QCustomPlot with a title, axis labels, hover read-out and export: PNG, PDF and the plotted data
// as CSV (every number traceable to the data). Heat maps use a colour scale with a label.
#pragma once

#include <QString>
#include <QWidget>

#include <functional>
#include <vector>

class QCustomPlot;
class QCPColorMap;
class QCPColorScale;
class QLabel;

namespace decayfw::app {

class PlotPanel : public QWidget {
  Q_OBJECT

 public:
  PlotPanel(const QString& title, const QString& x_label, const QString& y_label, QWidget* parent = nullptr);

  QCustomPlot* plot() const { return plot_; }
  const QString& title() const { return title_; }

  // Line/scatter series (replaces existing ones with the same name).
  void setSeries(const QString& name, const std::vector<double>& x, const std::vector<double>& y, const QColor& color,
                 bool scatter = false);
  void clearSeries();
  void keepOnlySeries(const QString& name);
  // A heat map of `rows × cols` values (row-major); x = column index, y = row index.
  void setHeatMap(const std::vector<float>& values, int rows, int cols, const QString& value_label, bool log_scale = false,
                  double lo = 0, double hi = 0);
  // Row/column tick labels (e.g. tokens) for heat maps and per-token plots.
  void setXTickLabels(const std::vector<std::string>& labels);
  void setYTickLabels(const std::vector<std::string>& labels);
  void setLogY(bool log);

  QString csv() const;  // the data behind the plot
  bool exportTo(const QString& path);  // .png, .pdf or .csv by extension
  // The value under (x, y) in data coordinates, as shown on hover ("" outside the data).
  QString valueAt(double x, double y) const;
  // Heat-map values as stored, for tests: (row, col) → value.
  double heatValue(int row, int col) const;
  int seriesCount() const;
  int pointCount(const QString& series) const;

 public slots:
  void exportWithDialog();

 private:
  QString title_;
  QCustomPlot* plot_;
  QCPColorMap* map_ = nullptr;
  QCPColorScale* scale_ = nullptr;
  QLabel* hover_;
  std::vector<float> heat_;
  int rows_ = 0, cols_ = 0;
  std::vector<std::string> xlabels_, ylabels_;
  void onMouseMove(QMouseEvent* e);
};

}  // namespace decayfw::app
