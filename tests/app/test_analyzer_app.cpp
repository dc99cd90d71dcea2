// The desktop analyzer driven as a user would, on real checkpoints made by fairseq (the engine
// fixtures): open, generate (the text equals the engine's), gates (the plotted values equal the
// engine's), a benchmark (a point per context length and model), cancelling a long benchmark while
// the event loop stays responsive, bad files (a dialog, no crash), the Device box (CPU, and CUDA
// shown disabled with the reason where this LibTorch has none; with a GPU the models move there and
// back), reloading the models (both swapped together; a failure keeps the old ones), the device
// setting kept across windows, and screenshots of every view.
//
// Runs on the offscreen platform in CTest, and once more under Xvfb with a real window.
#include <QApplication>
#include <QComboBox>
#include <QDir>
#include <QDockWidget>
#include <QElapsedTimer>
#include <QFile>
#include <QMessageBox>
#include <QLabel>
#include <QPlainTextEdit>
#include <QSettings>
#include <QStandardItemModel>
#include <QStandardPaths>
#include <QTemporaryDir>
#include <QAbstractItemView>
#include <QScreen>
#include <QTimer>
#include <QToolTip>
#include <QtTest>

#include <cmath>

#include "engine_bridge.h"
#include "job_runner.h"
#include "main_window.h"
#include "plot_panel.h"

using namespace decayfw::app;

namespace {

QString env_or(const char* name, const QString& fallback) {
  const QByteArray v = qgetenv(name);
  return v.isEmpty() ? fallback : QString::fromLocal8Bit(v);
}

QString fixture(const QString& name) { return env_or("DECAYFW_ENGINE_FIXTURES", ".") + "/" + name; }

// The first usable GPU the bridge offers, or "" (then CUDA tests skip).
QString usable_gpu() {
  for (const DeviceChoice& d : EngineSession::devices()) {
    if (d.available && d.name != "cpu") return QString::fromStdString(d.name);
  }
  return {};
}

}  // namespace

class AnalyzerTest : public QObject {
  Q_OBJECT

 private:
  MainWindow* w_ = nullptr;
  QString checkpoint_, comparison_, text_;

  void waitIdle(int ms = 120000) { QTRY_VERIFY_WITH_TIMEOUT(!w_->jobs().busy(), ms); }
  void closeMessage() {
    if (QMessageBox* box = visibleMessage()) box->close();
  }
  QMessageBox* visibleMessage() {
    for (QWidget* top : QApplication::topLevelWidgets()) {
      if (auto* box = qobject_cast<QMessageBox*>(top); box && box->isVisible()) return box;
    }
    for (auto* box : w_->findChildren<QMessageBox*>()) {
      if (box->isVisible()) return box;
    }
    return nullptr;
  }

 private slots:
  void initTestCase() {
    QStandardPaths::setTestModeEnabled(true);  // QSettings of the tests never touch the user's
    EngineSession::set_threads(1);             // leave a core to the UI thread
    checkpoint_ = env_or("DECAYFW_APP_CHECKPOINT", fixture("decay/checkpoint_last.pt"));
    comparison_ = env_or("DECAYFW_APP_COMPARISON", fixture("base/checkpoint_last.pt"));
    text_ = env_or("DECAYFW_APP_TEXT", "a b c d e f g h i j k l m n o p q r s t");
    QSettings().setValue("engine/device", "cpu");  // a GPU run's choice must not carry over to this one
    w_ = new MainWindow();
    w_->resize(1400, 900);
    w_->show();
    QVERIFY(QTest::qWaitForWindowExposed(w_));
  }

  void cleanupTestCase() { delete w_; }

  void opensARealCheckpoint() {
    QSignalSpy loaded(w_, &MainWindow::modelLoaded);
    w_->openCheckpoint(checkpoint_);
    waitIdle();
    QCOMPARE(loaded.count(), 1);
    QVERIFY(w_->models().primary != nullptr);
    QVERIFY2(w_->summaryText().contains("decaying fast weights"), qPrintable(w_->summaryText()));
    w_->openCheckpoint(comparison_, true);
    waitIdle();
    QVERIFY(w_->models().comparison != nullptr);
    QVERIFY(w_->summaryText().contains("softmax attention"));
  }

  void generateMatchesEngine() {
    GenerateView* g = w_->generateView();
    g->promptEdit()->setPlainText(text_.section(' ', 0, 3));
    GenerationSettings s;
    s.max_new_tokens = 8;
    g->setSettings(s);
    g->generate();
    waitIdle();
    const auto engine = EngineSession::open(checkpoint_.toStdString());
    const auto want = engine->generate(text_.section(' ', 0, 3).toStdString(), s, {}, nullptr);
    QCOMPARE(g->outputText(0), QString::fromStdString(want.text));
    const auto base = EngineSession::open(comparison_.toStdString());
    QCOMPARE(g->outputText(1), QString::fromStdString(base->generate(text_.section(' ', 0, 3).toStdString(), s, {}, nullptr).text));
  }

  void gatesPlotTheEnginesValues() {
    GatesView* v = w_->gatesView();
    v->setText(text_);
    v->setLayerHead(1, 2);
    v->compute();
    waitIdle();
    const auto engine = EngineSession::open(checkpoint_.toStdString());
    const HeadView h = engine->head_view(text_.toStdString(), 1, 2);
    QCOMPARE(v->primaryView().T, h.T);
    for (int t = 0; t < h.T; t += 3) {
      for (int d = 0; d < h.D; ++d) QCOMPARE(v->sigmaZPlot()->heatValue(t, d), static_cast<double>(h.sigma_z[t * h.D + d]));
      for (int m = 0; m < h.M; ++m) QCOMPARE(v->sigmaFPlot()->heatValue(t, m), static_cast<double>(h.sigma_f[t * h.M + m]));
    }
    const auto g = h.gate_matrix(h.T - 1);
    for (int d = 0; d < h.D; ++d) {
      for (int m = 0; m < h.M; ++m) QCOMPARE(v->gatePlot()->heatValue(d, m), static_cast<double>(g[d * h.M + m]));
    }
    // the state-decay view got the same head, and the comparison's attention map beside it
    QCOMPARE(w_->decayView()->implied()->heatValue(h.map_tokens - 1, 0), static_cast<double>(h.map[(h.map_tokens - 1) * h.map_tokens]));
    QVERIFY(std::isfinite(w_->decayView()->baseMap()->heatValue(3, 1)));
    QVERIFY(!w_->decayView()->implied()->valueAt(1, 2).isEmpty());  // hover read-out inside the map
  }

  void benchmarkPlotsAPointPerLength() {
    BenchmarkView* b = w_->benchmarkView();
    b->setContexts("16,32,64", 2);
    b->run();
    waitIdle();
    QCOMPARE(b->latencyPlot()->pointCount("decay"), 3);
    QCOMPARE(b->latencyPlot()->pointCount("attention"), 3);
    QCOMPARE(b->memoryPlot()->pointCount("attention"), 3);
    QVERIFY(b->latencyPlot()->csv().count('\n') == 7);  // header + 6 points
    for (const BenchSample& s : b->samples()) QCOMPARE(QString::fromStdString(s.device), QString("cpu"));
  }

  void cancelKeepsTheUiResponsive() {
    BenchmarkView* b = w_->benchmarkView();
    b->setContexts("256,512,1024,2048,3072,4096,6144,8192", 500);
    b->run();
    QVERIFY(w_->jobs().busy());
    QElapsedTimer clock;
    clock.start();
    qint64 last = 0, worst = 0;
    QTimer tick;
    connect(&tick, &QTimer::timeout, [&] {
      worst = std::max(worst, clock.elapsed() - last);
      last = clock.elapsed();
    });
    tick.start(5);
    QTest::qWait(1500);  // the benchmark runs; the event loop must keep ticking
    b->cancel();
    QElapsedTimer stop;
    stop.start();
    waitIdle(20000);
    tick.stop();
    QVERIFY2(worst < 100, qPrintable(QString("event-loop latency %1 ms during the benchmark").arg(worst)));
    QVERIFY2(stop.elapsed() < 10000, qPrintable(QString("cancel took %1 ms").arg(stop.elapsed())));
  }

  void badFilesGiveADialog() {
    QTemporaryDir dir;
    const QString noise = dir.filePath("noise.pt");
    QFile f(noise);
    QVERIFY(f.open(QIODevice::WriteOnly));
    f.write(QByteArray(4096, '\x42'));
    f.close();
    for (const auto& [path, needle] : std::initializer_list<std::pair<QString, QString>>{
             {dir.filePath("missing.pt"), "cannot open"},
             {noise, "not a torch checkpoint"},
             {fixture("evil_zip.pt"), "refusing to run"}}) {
      QSignalSpy errors(w_, &MainWindow::errorShown);
      w_->openCheckpoint(path);
      waitIdle();
      QTRY_COMPARE(errors.count(), 1);
      QVERIFY2(errors.at(0).at(0).toString().contains(needle), qPrintable(errors.at(0).at(0).toString()));
      QMessageBox* box = visibleMessage();
      QVERIFY(box != nullptr);
      box->close();
      QVERIFY(w_->models().primary != nullptr);  // the loaded model is kept
    }
  }

  void deviceBoxListsCpuAndCuda() {
    QComboBox* box = w_->deviceBox();
    QVERIFY(box != nullptr);
    QVERIFY(box->isVisible());
    QCOMPARE(w_->device(), QString("cpu"));
    QCOMPARE(box->currentData().toString(), QString("cpu"));
    QCOMPARE(box->itemText(0), QString("CPU"));
    auto* items = qobject_cast<QStandardItemModel*>(box->model());
    QVERIFY(items != nullptr);
    QVERIFY(items->item(0)->isEnabled());
    QVERIFY2(w_->summaryText().contains(QRegularExpression("device\\s+cpu")), qPrintable(w_->summaryText()));
    const QString gpu = usable_gpu();
#ifndef DECAYFW_TEST_TORCH_HAS_CUDA
    QVERIFY2(gpu.isEmpty(), "a CPU-only LibTorch offered a GPU");
#endif
    if (!gpu.isEmpty()) {
      for (int i = 1; i < box->count(); ++i) {
        QCOMPARE(box->itemData(i).toString(), QString("cuda:%1").arg(i - 1));
        QVERIFY(items->item(i)->isEnabled());
      }
      return;
    }
    // no CUDA here: the entry is shown, disabled, with the reason in its tooltip
    QCOMPARE(box->count(), 2);
    QCOMPARE(box->itemData(1).toString(), QString("cuda"));
    QVERIFY2(box->itemText(1).contains("unavailable"), qPrintable(box->itemText(1)));
    QVERIFY(!items->item(1)->isEnabled());
    QVERIFY(!(items->flags(items->index(1, 0)) & Qt::ItemIsEnabled));
    const QString tip = box->itemData(1, Qt::ToolTipRole).toString();
#ifndef DECAYFW_TEST_TORCH_HAS_CUDA
    QVERIFY2(tip.contains("this LibTorch has no CUDA"), qPrintable(tip));
#else
    QVERIFY2(tip.contains("no GPU is visible"), qPrintable(tip));
#endif
    // asked for anyway (a script, a stale setting): refused with the reason; models and box stay on the CPU
    const auto primary = w_->models().primary, comparison = w_->models().comparison;
    QSignalSpy errors(w_, &MainWindow::errorShown);
    QVERIFY(!w_->setDevice("cuda"));
    QTRY_COMPARE(errors.count(), 1);
    QVERIFY2(errors.at(0).at(0).toString().contains("has no CUDA") || errors.at(0).at(0).toString().contains("no GPU"),
             qPrintable(errors.at(0).at(0).toString()));
    closeMessage();
    QVERIFY(!w_->jobs().busy());
    QCOMPARE(w_->device(), QString("cpu"));
    QCOMPARE(box->currentData().toString(), QString("cpu"));
    QCOMPARE(w_->models().primary, primary);
    QCOMPARE(w_->models().comparison, comparison);
    QCOMPARE(QSettings().value("engine/device").toString(), QString("cpu"));
  }

  void reloadSwapsBothModelsTogether() {
    const auto primary = w_->models().primary, comparison = w_->models().comparison;
    QVERIFY(primary && comparison);
    QSignalSpy changed(w_, &MainWindow::deviceChanged);
    QVERIFY(w_->reloadModels("cpu"));
    QVERIFY(w_->jobs().busy());
    QVERIFY(!w_->deviceBox()->isEnabled());  // no device change in the middle of a job
    QVERIFY(!w_->setDevice("cuda:0") || !usable_gpu().isEmpty());
    closeMessage();
    waitIdle();
    QVERIFY(w_->deviceBox()->isEnabled());
    QCOMPARE(changed.count(), 1);
    QVERIFY(w_->models().primary != primary);
    QVERIFY(w_->models().comparison != comparison);
    QCOMPARE(w_->models().primary->summary().path, primary->summary().path);
    QCOMPARE(w_->models().comparison->summary().path, comparison->summary().path);
    QCOMPARE(QString::fromStdString(w_->models().primary->summary().device), QString("cpu"));
    QCOMPARE(QString::fromStdString(w_->models().comparison->summary().device), QString("cpu"));
    // the reloaded models give the same results as before
    GenerationSettings s;
    s.max_new_tokens = 6;
    const std::string prompt = text_.section(' ', 0, 2).toStdString();
    QCOMPARE(w_->models().primary->generate(prompt, s, {}, nullptr).text, primary->generate(prompt, s, {}, nullptr).text);

    // a reload that fails (the file is gone) keeps the models it had, on the device they were on
    QTemporaryDir dir;
    const QString copy = dir.filePath("checkpoint_last.pt");
    QVERIFY(QFile::copy(checkpoint_, copy));
    w_->openCheckpoint(copy, false, fixture("dict.txt"));
    waitIdle();
    const auto from_copy = w_->models().primary;
    QCOMPARE(QString::fromStdString(from_copy->summary().path), copy);
    QVERIFY(QFile::remove(copy));
    QSignalSpy errors(w_, &MainWindow::errorShown);
    QVERIFY(w_->reloadModels("cpu"));
    waitIdle();
    QTRY_COMPARE(errors.count(), 1);
    QVERIFY2(errors.at(0).at(0).toString().contains("cannot open"), qPrintable(errors.at(0).at(0).toString()));
    closeMessage();
    QCOMPARE(w_->models().primary, from_copy);
    QCOMPARE(w_->device(), QString("cpu"));
    w_->openCheckpoint(checkpoint_);  // back to the fixture for the screenshots
    waitIdle();
    QCOMPARE(QString::fromStdString(w_->models().primary->summary().path), checkpoint_);
  }

  void deviceSettingPersists() {
    QSettings settings;
    // a choice this machine cannot honour (a GPU machine's, here): the CPU, the setting kept, said in the status bar
    settings.setValue("engine/device", "cuda:99");
    {
      MainWindow w;
      QCOMPARE(w.device(), QString("cpu"));
      QCOMPARE(w.deviceBox()->currentData().toString(), QString("cpu"));
      QCOMPARE(settings.value("engine/device").toString(), QString("cuda:99"));
      bool said = false;
      for (QLabel* l : w.findChildren<QLabel*>()) said |= l->text().contains("cuda:99 cannot be used here");
      QVERIFY(said);
      QVERIFY(w.setDevice("cpu"));  // chosen explicitly: kept
      QCOMPARE(settings.value("engine/device").toString(), QString("cpu"));
    }
    {
      MainWindow w;
      QCOMPARE(w.device(), QString("cpu"));
    }
    const QString gpu = usable_gpu();
    if (gpu.isEmpty()) return;
    {
      MainWindow w;  // no models: applies at once, and is kept
      QVERIFY(w.setDevice(gpu));
      QCOMPARE(w.device(), gpu);
      QCOMPARE(settings.value("engine/device").toString(), gpu);
    }
    {
      MainWindow w;
      QCOMPARE(w.device(), gpu);
      QCOMPARE(w.deviceBox()->currentData().toString(), gpu);
    }
    settings.setValue("engine/device", "cpu");
  }

  void cudaRunsEveryViewAndComesBack() {
    const QString gpu = usable_gpu();
    if (gpu.isEmpty()) QSKIP("no usable CUDA device here (this LibTorch has no CUDA, or no GPU is visible)");
#ifndef DECAYFW_WITH_CUDA
    QSKIP("the decayfw ops were built without CUDA kernels: the decay model cannot run on the GPU");
#endif
    QVERIFY(w_->setDevice(gpu));
    waitIdle(300000);
    QCOMPARE(w_->device(), gpu);
    QCOMPARE(QString::fromStdString(w_->models().primary->summary().device), gpu);
    QCOMPARE(QString::fromStdString(w_->models().comparison->summary().device), gpu);
    QVERIFY(w_->summaryText().contains(gpu));
    // generation on the GPU: the CPU engine's text
    GenerateView* g = w_->generateView();
    g->promptEdit()->setPlainText(text_.section(' ', 0, 3));
    GenerationSettings s;
    s.max_new_tokens = 8;
    g->setSettings(s);
    g->generate();
    waitIdle();
    const auto cpu = EngineSession::open(checkpoint_.toStdString(), "", "cpu");
    QCOMPARE(g->outputText(0), QString::fromStdString(cpu->generate(text_.section(' ', 0, 3).toStdString(), s, {}, nullptr).text));
    // gates, perplexity and the benchmark run there too
    QSignalSpy errors(w_, &MainWindow::errorShown);
    w_->gatesView()->setText(text_);
    w_->gatesView()->compute();
    waitIdle();
    const HeadView h = cpu->head_view(text_.toStdString(), 1, 2);
    QCOMPARE(w_->gatesView()->primaryView().T, h.T);
    QVERIFY(std::abs(w_->gatesView()->sigmaZPlot()->heatValue(0, 0) - h.sigma_z[0]) < 1e-5);
    w_->perplexityView()->setText(text_);
    w_->perplexityView()->compute();
    waitIdle();
    QVERIFY(w_->perplexityView()->lossPlot()->pointCount("decay") > 0);
    BenchmarkView* b = w_->benchmarkView();
    b->setContexts("16,32", 2);
    b->run();
    waitIdle();
    QCOMPARE(b->latencyPlot()->pointCount("decay"), 2);
    for (const BenchSample& p : b->samples()) QCOMPARE(QString::fromStdString(p.device), gpu);
    QCOMPARE(errors.count(), 0);
    // and back
    QVERIFY(w_->setDevice("cpu"));
    waitIdle();
    QCOMPARE(QString::fromStdString(w_->models().primary->summary().device), QString("cpu"));
    QCOMPARE(QSettings().value("engine/device").toString(), QString("cpu"));
  }

  void screenshots() {
    const QString dir = env_or("DECAYFW_SCREENSHOT_DIR", QDir::currentPath() + "/screenshots");
    QDir().mkpath(dir);
    w_->perplexityView()->setText(text_);
    w_->perplexityView()->compute();
    waitIdle();
    QVERIFY(w_->perplexityView()->lossPlot()->pointCount("decay") > 0);
    w_->benchmarkView()->setContexts(env_or("DECAYFW_APP_CONTEXTS", "64,256,512,1024,2048"), 8);
    w_->benchmarkView()->run();
    waitIdle(600000);
    const std::pair<const char*, QWidget*> views[] = {
        {"generate", w_->generateView()}, {"gates", w_->gatesView()}, {"state_decay", w_->decayView()},
        {"perplexity", w_->perplexityView()}, {"benchmark", w_->benchmarkView()}};
    for (const auto& [name, view] : views) {
      w_->showView(view);
      QTest::qWait(200);
      const QString path = dir + "/" + name + ".png";
      QVERIFY2(w_->grab().save(path), qPrintable(path));
    }
    if (QGuiApplication::platformName() == "xcb") {  // a real screen: the Device box open, with the last entry's tooltip
      QComboBox* box = w_->deviceBox();
      box->showPopup();
      QTest::qWait(300);
      QAbstractItemView* list = box->view();
      const QRect r = list->visualRect(box->model()->index(box->count() - 1, 0));
      QToolTip::showText(list->viewport()->mapToGlobal(r.center()),
                         box->itemData(box->count() - 1, Qt::ToolTipRole).toString(), list);
      QTest::qWait(300);
      const QString path = dir + "/device.png";
      QVERIFY2(w_->screen()->grabWindow(0).save(path), qPrintable(path));
      QToolTip::hideText();
      box->hidePopup();
    }
  }
};

QTEST_MAIN(AnalyzerTest)
#include "test_analyzer_app.moc"
