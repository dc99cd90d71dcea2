// The analyzer's views. Each displays what the engine computed (through EngineSession, on the job
// runner's thread) and owns no numbers of its own.
#pragma once

#include <QWidget>

#include <memory>
#include <vector>

#include "engine_bridge.h"

class QCheckBox;
class QDoubleSpinBox;
class QLabel;
class QLineEdit;
class QPlainTextEdit;
class QProgressBar;
class QPushButton;
class QSlider;
class QSpinBox;
class QTextBrowser;

namespace decayfw::app {

class JobRunner;
class PlotPanel;

// The loaded models, shared by the views.
struct Models {
  std::shared_ptr<EngineSession> primary;     // the model being analyzed
  std::shared_ptr<EngineSession> comparison;  // optional: its attention base (or any second model)
};

class View : public QWidget {
  Q_OBJECT
 public:
  View(Models& models, JobRunner& jobs, QWidget* parent) : QWidget(parent), models_(models), jobs_(jobs) {}
  virtual void modelsChanged() {}
  virtual std::vector<PlotPanel*> plots() const { return {}; }
 signals:
  void failed(const QString& title, const QString& message);
 protected:
  Models& models_;
  JobRunner& jobs_;
};

class GenerateView : public View {
  Q_OBJECT
 public:
  GenerateView(Models& models, JobRunner& jobs, QWidget* parent = nullptr);
  void modelsChanged() override;
  QString outputText(int which) const;  // 0: primary, 1: comparison (plain text)
  QPlainTextEdit* promptEdit() const { return prompt_; }
  GenerationSettings settings() const;
  void setSettings(const GenerationSettings& s);
 public slots:
  void generate();
  void stop();
 signals:
  void generated(const QString& text);
 private:
  QPlainTextEdit* prompt_;
  QSpinBox *length_, *top_k_, *seed_;
  QDoubleSpinBox *temperature_, *top_p_;
  QCheckBox* sample_;
  QPushButton *go_, *stop_;
  QTextBrowser* out_[2];
  QLabel* speed_[2];
  QString plain_[2];
};

class GatesView : public View {
  Q_OBJECT
 public:
  GatesView(Models& models, JobRunner& jobs, QWidget* parent = nullptr);
  void modelsChanged() override;
  std::vector<PlotPanel*> plots() const override;
  void setText(const QString& text);
  void setLayerHead(int layer, int head);
  const HeadView& primaryView() const { return view_; }
  PlotPanel* gatePlot() const { return gate_; }
  PlotPanel* sigmaZPlot() const { return sz_; }
  PlotPanel* sigmaFPlot() const { return sf_; }
  void showToken(int t);
 public slots:
  void compute();
 signals:
  void headViewsReady(const decayfw::app::HeadView& primary, const decayfw::app::HeadView& comparison);
 private:
  QPlainTextEdit* text_;
  QSpinBox *layer_, *head_;
  QPushButton* go_;
  QSlider* token_;
  QLabel *token_label_, *note_;
  PlotPanel *gate_, *sz_, *sf_;
  HeadView view_;
};

class DecayView : public View {
  Q_OBJECT
 public:
  DecayView(Models& models, JobRunner& jobs, QWidget* parent = nullptr);
  std::vector<PlotPanel*> plots() const override;
  void show(const HeadView& primary, const HeadView& comparison);
  PlotPanel* implied() const { return implied_; }
  PlotPanel* baseMap() const { return base_; }
  PlotPanel* retention() const { return retention_; }
 private:
  void showRetention(int j);
  QSlider* source_;
  QLabel *source_label_, *note_;
  PlotPanel *half_life_, *retention_, *norm_, *implied_, *base_;
  HeadView primary_;
};

class PerplexityView : public View {
  Q_OBJECT
 public:
  PerplexityView(Models& models, JobRunner& jobs, QWidget* parent = nullptr);
  std::vector<PlotPanel*> plots() const override;
  void setText(const QString& text);
  PlotPanel* lossPlot() const { return loss_; }
 public slots:
  void compute();
 private:
  QPlainTextEdit* text_;
  QPushButton* go_;
  QLabel* summary_;
  PlotPanel* loss_;
};

class BenchmarkView : public View {
  Q_OBJECT
 public:
  BenchmarkView(Models& models, JobRunner& jobs, QWidget* parent = nullptr);
  std::vector<PlotPanel*> plots() const override;
  void setContexts(const QString& contexts, int steps);
  PlotPanel* latencyPlot() const { return latency_; }
  PlotPanel* memoryPlot() const { return memory_; }
  const std::vector<BenchSample>& samples() const { return samples_; }
 public slots:
  void run();
  void cancel();
 private:
  void addSample(const BenchSample& s);
  QLineEdit* contexts_;
  QSpinBox* steps_;
  QPushButton *go_, *stop_;
  QProgressBar* progress_;
  QLabel* note_;
  PlotPanel *latency_, *memory_;
  std::vector<BenchSample> samples_;
  int expected_ = 0;
};

}  // namespace decayfw::app
