// The analyzer's main window: the views as dockable panels, the model summary, open/compare with
// recent files and drag and drop, loading off the UI thread with a busy bar, readable errors,
// export, shortcuts, and the layout and settings kept in QSettings.
#pragma once

#include <QMainWindow>

#include "views.h"

class QComboBox;
class QDockWidget;
class QLabel;
class QMenu;
class QProgressBar;
class QTextBrowser;

namespace decayfw::app {

class MainWindow : public QMainWindow {
  Q_OBJECT

 public:
  explicit MainWindow(QWidget* parent = nullptr);
  ~MainWindow() override;

  // Loads off the UI thread; `comparison` loads the second (attention base) model.
  void openCheckpoint(const QString& path, bool comparison = false, const QString& dictionary = QString());
  JobRunner& jobs() { return *jobs_; }
  Models& models() { return models_; }
  GenerateView* generateView() const { return generate_; }
  GatesView* gatesView() const { return gates_; }
  DecayView* decayView() const { return decay_; }
  PerplexityView* perplexityView() const { return perplexity_; }
  BenchmarkView* benchmarkView() const { return bench_; }
  QString summaryText() const;
  // The device models are loaded onto ("cpu", "cuda:0"), chosen in the Device box and kept in
  // QSettings (engine/device). Changing it with models loaded reloads them onto the new device off
  // the UI thread, both together (no mix of devices); on failure the old models and device stay.
  // Returns false (with a dialog) when the device cannot be used or a job is running.
  QString device() const { return device_; }
  bool setDevice(const QString& name);
  // Reopens the open models (both, from their files) on `device` off the UI thread, swapping them in
  // together when both loaded; false (with a dialog) when the device cannot be used or a job runs.
  bool reloadModels(const QString& device);
  QComboBox* deviceBox() const { return device_box_; }
  // Raises the dock holding `view` (for screenshots and the View menu).
  void showView(QWidget* view);
  QList<QDockWidget*> docks() const { return docks_; }

 signals:
  void modelLoaded(bool comparison);
  void deviceChanged(const QString& device);
  void errorShown(const QString& message);

 protected:
  void closeEvent(QCloseEvent* e) override;
  void dragEnterEvent(QDragEnterEvent* e) override;
  void dropEvent(QDropEvent* e) override;

 private:
  void showError(const QString& title, const QString& message);
  void updateSummary();
  void addRecent(const QString& path);
  void rebuildRecentMenu();
  void exportCurrentPlot();
  void buildDeviceBox();
  void showDeviceInBox();  // the box shows device_ (after a refusal or a failed reload)
  void applyDevice(const QString& name);
  void modelsReplaced();
  QDockWidget* addView(const QString& title, QWidget* view, Qt::DockWidgetArea area);

  Models models_;
  JobRunner* jobs_;
  QTextBrowser* summary_;
  GenerateView* generate_;
  GatesView* gates_;
  DecayView* decay_;
  PerplexityView* perplexity_;
  BenchmarkView* bench_;
  QList<QDockWidget*> docks_;
  QMenu* recent_;
  QProgressBar* busy_;
  QLabel* status_;
  QComboBox* device_box_;
  QString device_ = "cpu";
};

}  // namespace decayfw::app
